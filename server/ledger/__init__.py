"""The safety ledger (安全台账): routine inspections, their sensor evidence, missing checks, XLSX export."""
