"""Collective algorithms as schedules (installed as ``collbench.algorithms``)."""

from .schedule import (Buf, Collective, Copy, Layout, Problem, Program, Recv, Reduce, Schedule,
                       Send, Slice, Step, inplace_input_offset)

__all__ = ["Buf", "Collective", "Copy", "Layout", "Problem", "Program", "Recv", "Reduce",
           "Schedule", "Send", "Slice", "Step", "inplace_input_offset"]
