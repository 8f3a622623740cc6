"""What the operator commands that talk to the web API share: argument types and the web API client.

The commands themselves (`status`, `builds`, `build`, `recheck`) are gatekeeper.cmd.operator.
"""
