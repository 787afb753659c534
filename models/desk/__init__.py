"""The trading desk: entry points and precedence, and the small components it is made of."""
