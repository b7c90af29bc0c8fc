"""The reference fleet's workers: an order-fulfilment saga by choreography.

Each module is one worker; `topology/fleet.yaml` wires them together. State is
kept in each process's memory for now, so a restart forgets stock and orders;
the PostgreSQL-backed versions replace these in the saga work.
"""
