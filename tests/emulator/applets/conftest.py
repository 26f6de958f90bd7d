"""Shared by the smart-card applets' tests: this directory's helper modules
(``sshd_support``) are importable from every test below it (pytest puts a conftest's
directory on ``sys.path``)."""
