"""HAT search spaces shipped with hat (installed as the package ``hat_configs``)."""
