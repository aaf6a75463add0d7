"""Worker processes: one per region (`ledgerflow worker --region us`)."""
