"""Meal subsidies: policies, eligibility, monthly settlement, anomalies, sign-off snapshots and the public notice."""
