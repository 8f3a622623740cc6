"""Provider adapters: the one narrow interface (create, poll, delete, list, snapshot) each cloud implements."""
