"""The aiomesos agent: runs tasks under isolation on one host and reports every state change."""
