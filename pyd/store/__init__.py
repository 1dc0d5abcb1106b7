"""pyd's own records, in pyd's own schema (docs/storage.md): containers,
image configs by digest and the refs that name them, layers by diff id
(shared between images), volume directories, and the data root's format version and migration.
Every record is written atomically (store.atomic). No wire shapes here: the
API's projections are computed from these records in pyd/api."""
