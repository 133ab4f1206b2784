"""Generators of the reference documents in ``doc/`` (not used while serving).

Each module renders one file from the declarations it documents and has a
``main()`` that writes it; a test fails when a committed file is stale.
"""
