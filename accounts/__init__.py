"""Organisations, their people (roles, licence types, activation), sign-up, login, audit."""
