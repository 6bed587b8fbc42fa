"""The customer table: its schema, the generated data and examples, samples, the split, the preprocessor, drift."""
