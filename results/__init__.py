"""Result schema, the collector service, the store, reports and the dashboard."""
