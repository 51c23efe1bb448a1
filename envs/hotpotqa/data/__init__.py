"""Shipped data of the HotPotQA environment (a package so that its files install as package data)."""
