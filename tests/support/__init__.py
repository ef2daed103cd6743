"""What the tests share that is not a fixture: a fault-injecting proxy, a throwaway PostgreSQL,
the stored objects of a backend, and ``chattr +i``."""
