"""pyd's networking foundation (rank 3, beside store and runtime; imports
only native and base): an rtnetlink client (`netlink`) and address
management (`ipam`). docs/network.md says what it does and what remains."""
