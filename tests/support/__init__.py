"""Test support: consortia of keys and genesis, node processes, fault-injecting link proxies."""
