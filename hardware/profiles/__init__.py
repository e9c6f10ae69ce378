"""Scanner profiles (TOML), read through importlib.resources."""
