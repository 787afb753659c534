"""stratflow: connectors."""
