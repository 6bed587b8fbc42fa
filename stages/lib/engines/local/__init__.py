"""The local engine: this process, independent fits side by side in threads."""
