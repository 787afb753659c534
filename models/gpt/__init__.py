"""The pure half of the GPT strategy controller: prompt, answer, cost, digest, circuit breaker."""
