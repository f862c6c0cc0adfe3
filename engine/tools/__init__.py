"""Built-in tools. Each is a plain function `(args, ctx) -> dict`, described by catalogs/tools.json."""
