"""The audit trail people can query: where each identifier went (lookup), every run and attempt (runs), and the
outputs as tables for the warehouse (audit export). All of it reads only a job's outputs: no secret is needed."""
