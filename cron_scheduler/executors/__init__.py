"""Pools that run jobs somewhere other than this host (DESIGN.md section 5): same Pool contract
as pool.LocalPool. Each is imported only when selected (`--executor`), with its optional extra."""
