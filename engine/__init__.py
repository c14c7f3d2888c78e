"""remote-assist's engine: protocol, invitations, transport and the streaming codec (no Qt)."""
