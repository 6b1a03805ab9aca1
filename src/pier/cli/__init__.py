"""The ``pier`` command line, built on :mod:`pier.sdk`."""
