"""stratflow: api."""
