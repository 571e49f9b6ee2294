"""Who is calling (tokens, API keys, stream tickets), what they may do, and the record of what they did."""
