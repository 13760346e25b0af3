"""lmvisor: DSPy's programming model on an OTP-style asyncio runtime."""
