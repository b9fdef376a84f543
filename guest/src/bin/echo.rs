//! `echo`: reads lines from its PL011 (polling UARTFR.RXFE, yielding while the FIFO is empty) and
//! prints each as `echo: <line>`; the line `bye` ends it with status 0. Runs with its MMU off.
//!
//! Its scenario types into it through the host console (`[[input]]` steps of `scenarios/echo.toml`):
//! a line reaches only the VM that has focus, and the escape key (Ctrl-]) moves focus.
//! Every UARTDR entry must have its error bits (11:8) clear.
#![no_std]
#![no_main]

use guest::{check, println};

guest::entry!(main);

/// Longest line the guest takes.
const LINE: usize = 64;

/// The next byte from the UART, yielding the CPU while there is none.
fn read_byte() -> u8 {
    let dr = guest::console::read_byte();
    check!(dr & guest::console::DR_ERRORS == 0, 2, "UARTDR {:#x} has error bits set", dr);
    dr as u8
}

fn main(cpu: usize, _arg: u64) -> u32 {
    if cpu != 0 {
        return 0;
    }
    println!("echo: ready");
    let mut line = [0u8; LINE];
    let mut len = 0;
    loop {
        match read_byte() {
            b'\r' | b'\n' if len == 0 => {}
            b'\r' | b'\n' => {
                let text = core::str::from_utf8(&line[..len]).unwrap_or("<not UTF-8>");
                println!("echo: {}", text);
                if text == "bye" {
                    return 0;
                }
                len = 0;
            }
            b => {
                check!(len < LINE, 3, "a line longer than {} bytes", LINE);
                line[len] = b;
                len += 1;
            }
        }
    }
}
