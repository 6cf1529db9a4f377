"""The SMU node: trio + libp2p + SQLite around the ``protocol`` machines."""
