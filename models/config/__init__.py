"""The run's configuration: validated settings and the notifier's targets."""
