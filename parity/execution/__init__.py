"""Parent side, running workers: the executor (fresh, kept or inline), the schedule (side by side or one
at a time), the pool of kept workers with its client and server, and the fork server's handles."""
