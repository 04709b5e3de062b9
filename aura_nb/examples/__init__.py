"""Ready plans for the notebooks, the README and the tests.

``game`` mirrors Aura's login example on a simulated device: four states (one a dead
end), four transitions, and two task bodies. It uses only the core.
"""

from .game import GAME_STATES_MAP, GameDevice, make_game_plan

__all__ = ["GAME_STATES_MAP", "GameDevice", "make_game_plan"]
