"""General steps of the policy language, one module per step type (named as in YAML)."""
