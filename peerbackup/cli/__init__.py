"""The `peerbackup` command line, split like borg's archiver: `main` assembles the parsers of the command
families (`repo`, `repo_backup`, `repo_forget`, `office`, `nodes`, `jobs`, `alerts`), which share `common`
and `tables` and never import each other (an import-linter contract in pyproject.toml says so)."""
