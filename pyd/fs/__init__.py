"""Filesystems: hostile-tar extraction and tar writing (tarsafe), layer views
(layerfs: union walk, export, changes, copies) and the storage drivers that
make a container's root from its image's layers. Knows paths, not records."""
