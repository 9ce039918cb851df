"""Real local HTTP servers that stand in for services we cannot run here (LLM endpoint, 3D engines…)."""
