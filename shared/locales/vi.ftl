# SMS: the code early, then who it is for and how long it lives.
sms = Mã xác minh { $app }: { $code }. Hiệu lực { $minutes } phút.
# Voice: said twice; $code is the digits with commas between.
voice = Mã xác minh { $app } của bạn là { $code }.
