//! The connected gate, read and written without blocking the main loop.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

/// One gate connection: bytes read but not yet a whole line, and bytes
/// to write that the socket did not take yet.
pub struct Client {
    /// The socket (non-blocking).
    pub stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Client {
    /// Wrap a freshly accepted connection.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            input: Vec::new(),
            output: Vec::with_capacity(64 * 1024),
        })
    }

    /// Read what is there: the complete lines, and whether the connection
    /// is still open (a gate that wrote and died still has its lines taken).
    pub fn read_lines(&mut self) -> (Vec<String>, bool) {
        let mut buf = [0u8; 64 * 1024];
        let open = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        let Some(end) = self.input.iter().rposition(|&b| b == b'\n') else {
            return (Vec::new(), open);
        };
        let rest = self.input.split_off(end + 1);
        let whole = std::mem::replace(&mut self.input, rest);
        let lines = String::from_utf8_lossy(&whole)
            .lines()
            .map(str::to_string)
            .collect();
        (lines, open)
    }

    /// Queue bytes to send.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Whether bytes wait for the socket to take them.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Write what the socket takes now.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
