"""Pre-trade compliance (issue 15): rules modelled on MiFID II RTS 6 Article 15's pre-trade
controls, judged on every proposal as one more reviewer of the desk's review loop."""
