"""stratflow: dataflows."""
