"""What every stage stands on: params, errors, the command-line shell, files, tables, exact rounding."""
