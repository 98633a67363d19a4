use std::io::Read;
use std::io::Result as IoResult;
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

use super::Abandon;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read + Abandon,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
}

impl<R> EqualReader<R>
where
    R: Read + Abandon,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
        };

        (r, rx)
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read + Abandon,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => err,
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read + Abandon,
{
    fn drop(&mut self) {
        // claudeway patch: drain through a fixed buffer, at most MAX_DRAIN bytes for at most
        // MAX_DRAIN_TIME (plus one read). The original allocated `vec![0; remaining]`, so a
        // request declaring a huge Content-Length that was answered without reading its body
        // (401, 413, ...) made the allocation fail and aborted the process. If the body is not
        // drained to its end, the connection is abandoned (closed) instead of reading the rest
        // as the next request.
        const MAX_DRAIN: usize = 1 << 20;
        const MAX_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);
        let until = std::time::Instant::now() + MAX_DRAIN_TIME;
        let mut buf = [0u8; 8192];
        let mut drained = 0;

        while self.size > 0 && drained < MAX_DRAIN && std::time::Instant::now() < until {
            let want = self.size.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Err(e) => {
                    self.last_read_signal.send(Err(e)).ok();
                    break;
                }
                Ok(0) => {
                    self.last_read_signal.send(Ok(())).ok();
                    break;
                }
                Ok(n) => {
                    self.size -= n;
                    drained += n;
                }
            }
        }
        if self.size > 0 {
            self.reader.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Abandon, EqualReader};
    use std::io::Read;

    impl<T> Abandon for std::io::Cursor<T> {
        fn abandon(&mut self) {}
    }

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
