# SMS: the code early, then who it is for and how long it lives.
sms = { $code } คือรหัสยืนยัน { $app } ของคุณ ใช้ได้ { $minutes } นาที
# Voice: said twice; $code is the digits with commas between.
voice = รหัสยืนยัน { $app } ของคุณคือ { $code }
