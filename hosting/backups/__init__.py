"""Backups: the store they live in (store.py) and the images restores rebuild from a
chain of them (images.py). The jobs that make, verify and restore backups are in
hosting/services/backups.py."""
