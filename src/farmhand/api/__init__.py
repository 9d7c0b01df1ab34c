"""The controller's REST API (+ SSE streams); the CLI and the dashboard are its clients."""
