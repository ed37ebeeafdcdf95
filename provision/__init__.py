"""The operator's toolkit: inventory, playbooks, facts and operations over SSH, PKI, the lab.

Rule 1: only `provision.connection` talks SSH; everything else takes an object with
`run/sudo/put/get`.
Rule 2: an operation gathers a fact, compares, and returns a plan (commands plus undo) or a
no-op with its reason; nothing runs until the plan is applied.
"""
