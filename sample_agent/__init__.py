"""sample_agent."""
