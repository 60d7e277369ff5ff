"""`alsatian_hf.plan`: the data schedule, the task tree and DFS+ plans. Pure Python, no torch, no I/O."""

from .dfs_plus import BlockInference, ModifyCache, Plan, ScoreModel, Step, fit_budget, plan_iteration, simulate_peak
from .schedule import DataSchedule, Unit, make_schedule, num_iterations, stratified_split
from .task_tree import BlockInfo, Node, TaskTree


__all__ = [
    "BlockInference",
    "BlockInfo",
    "DataSchedule",
    "ModifyCache",
    "Node",
    "Plan",
    "ScoreModel",
    "Step",
    "TaskTree",
    "Unit",
    "fit_budget",
    "make_schedule",
    "num_iterations",
    "plan_iteration",
    "simulate_peak",
    "stratified_split",
]
