"""Channel adapters: turn a messaging platform's pushes into IncomingMessage and deliver Reply back."""
