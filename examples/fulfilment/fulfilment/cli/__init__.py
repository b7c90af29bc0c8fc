"""The reference fleet's own commands, added to `fleet` through the `fleet.commands`
entry points of its distribution: `fleet demo`, `fleet standins` and `fleet shop`."""
