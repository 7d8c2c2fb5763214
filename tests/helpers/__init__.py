"""Small programs the tests run as subprocesses."""
