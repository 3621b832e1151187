"""Merchant accounts, their taxpayer ids, and the chat identities bound to them."""
