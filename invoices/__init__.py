"""Invoices: records from a backend (our database or the merchant platform's API), status answers, watches."""
